"""Sinks: stages at the end of the list that write, play or show frames and pass them on unchanged."""
