"""What makes a trace: child processes, scripted actors, observers of a live server, the wire, and which
process is behind each connection."""
