"""The command line around starter.py: its options (options), the settings built from them
(settings), the commands it suggests (commands) and the sentences its errors become (messages).
The only place that knows argparse, and the only one that spells `python starter.py`."""
