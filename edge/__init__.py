"""fer-edge: real-time facial emotion recognition daemon."""
