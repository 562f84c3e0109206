"""avcall.app: the command line, the local capture and playback, the server and the demo."""
