"""The web console served at `/ui`: static assets shipped inside the package (see assets.py)."""
