"""Inbound APIs other than chat completions (`/v1/messages`, ...): pure translation between a client's wire
format and the pipeline's chat completions, so every request still runs the one pipeline. base.py is the seam an
inbound API implements; proxy/http/inbound.py serves any of them."""
