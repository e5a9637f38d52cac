"""The one table of MQTT topics. Publishing (edge/mqtt.py), subscribers and the README all read it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

Keep = Literal["all", "latest", "session"]


@dataclass(frozen=True, slots=True)
class Topic:
    """`keep` is the offline-buffer policy: all = every message is kept; latest = a newer message replaces
    a buffered one; session = sent by the adapter itself after every connect, never buffered."""

    key: str
    pattern: str
    retain: bool
    keep: Keep
    payload: str
    description: str


TOPICS = (
    Topic("available", "{prefix}/{device}/available", True, "session", "`online` or `offline`",
          "Last Will `offline`; `online` after each successful connect; `offline` again on clean exit."),
    Topic("events", "{prefix}/{device}/events", False, "all", "JSON event (edge/schemas/event.schema.json)",
          "One per `start`, `change` or `end` of a tracked face's emotion."),
    Topic("state", "{prefix}/{device}/state", True, "latest",
          "JSON `{device, timestamp, faces: [{track_id, emotion, confidence, box}], count, dominant, source}`",
          "When the faces or their emotions change, and when the source goes `down` or comes back `up`."),
    Topic("stats", "{prefix}/{device}/stats", False, "latest",
          "JSON stats snapshot (fps, latency_ms, counters, cpu_percent, rss_mb, temperature_c, throttled, mqtt)",
          "Every `mqtt.stats_interval` seconds."),
    Topic("discovery", "{discovery_prefix}/sensor/{node}_{sensor}/config", True, "session",
          "Home Assistant sensor config (JSON)", "After each connect, only with `mqtt.discovery = true`."),
)
TOPIC = {topic.key: topic for topic in TOPICS}

# Home Assistant sensors: key, name, source topic, value template, extra config.
SENSORS = (
    ("emotion", "Dominant emotion", "state", "{{ value_json.dominant or 'none' }}",
     {"icon": "mdi:emoticon-outline"}),
    ("faces", "Faces", "state", "{{ value_json.count }}",
     {"state_class": "measurement", "unit_of_measurement": "faces"}),
    ("source", "Camera source", "state", "{{ value_json.source }}", {"icon": "mdi:cctv"}),
    ("fps", "Frames per second", "stats", "{{ value_json.fps }}",
     {"state_class": "measurement", "unit_of_measurement": "fps"}),
)


def node_id(device: str) -> str:
    """The device name as Home Assistant accepts it in ids."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device)


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The concrete topics of one device."""

    prefix: str
    device: str
    discovery_prefix: str = "homeassistant"

    def name(self, key: str, sensor: str = "") -> str:
        return TOPIC[key].pattern.format(prefix=self.prefix, device=self.device,
                                         discovery_prefix=self.discovery_prefix, node=node_id(self.device),
                                         sensor=sensor)

    def subscription(self) -> str:
        """A filter for everything the device publishes under the prefix (not discovery)."""
        return f"{self.prefix}/{self.device}/#"

    def discovery(self) -> list[tuple[str, dict[str, Any]]]:
        """(topic, config) of each Home Assistant sensor, with availability from the `available` topic."""
        node = node_id(self.device)
        device = {"identifiers": [f"fer_edge_{node}"], "name": self.device, "manufacturer": "fer-edge",
                  "model": "fer-edge"}
        return [
            (self.name("discovery", key),
             {"name": name, "unique_id": f"fer_edge_{node}_{key}", "state_topic": self.name(source),
              "value_template": template, "availability_topic": self.name("available"),
              "payload_available": "online", "payload_not_available": "offline", "device": device, **extra})
            for key, name, source, template, extra in SENSORS
        ]


def topics_markdown(prefix: str = "fer", device: str = "<device>") -> str:
    """The README's table of topics, rendered from TOPICS."""
    rows = ["| Topic | Retained | Payload | When |", "|---|---|---|---|"]
    for topic in TOPICS:
        name = topic.pattern.format(prefix=prefix, device=device, discovery_prefix="homeassistant",
                                    node=device, sensor="<sensor>")
        rows.append(f"| `{name}` | {'yes' if topic.retain else 'no'} | {topic.payload} | {topic.description} |")
    return "\n".join(rows) + "\n"
