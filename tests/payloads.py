"""Privacy, checked on every payload that a test's MQTT subscriber receives (issue 4, item 9).

No topic carries image data unless `[mqtt] publish_images` is switched on, and nothing publishes images
even then. So every payload must be UTF-8 text: the availability words or a JSON object, small, with short
strings and no base64-looking runs (an encoded frame or crop would be one long run).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

MAX_PAYLOAD = 16_384  # bytes: the largest stats snapshot is about 2 kB; a 48x48 crop in base64 is 3 kB
MAX_STRING = 200  # characters of any JSON string (a device name, a source path, an emotion)
BASE64_RUN = re.compile(rb"[A-Za-z0-9+/=]{64,}")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def image_data_problem(payload: bytes) -> str | None:
    """Why `payload` could carry image data, or None when it cannot."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary payload: {payload[:40]!r}"
    if len(payload) > MAX_PAYLOAD:
        return f"{len(payload)} bytes, more than {MAX_PAYLOAD}: {payload[:80]!r}"
    if match := BASE64_RUN.search(payload):
        return f"a base64-looking run of {len(match.group())} characters: {payload[:80]!r}"
    if text in ("online", "offline"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return f"neither JSON nor online/offline: {text[:80]!r}"
    if not isinstance(value, dict):
        return f"JSON but not an object: {text[:80]!r}"
    long = [s for s in _strings(value) if len(s) > MAX_STRING]
    return f"a string of {len(long[0])} characters: {long[0][:80]!r}" if long else None


def assert_no_image_data(payload: bytes | str) -> str:
    """Fail unless `payload` is text that cannot hold image data; returns it as text."""
    data = payload.encode() if isinstance(payload, str) else bytes(payload)
    problem = image_data_problem(data)
    assert problem is None, f"privacy: {problem}"
    return data.decode("utf-8")
