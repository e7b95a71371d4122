"""edge-serve: exported models over HTTP (the Open Inference Protocol, a plain JSON API and a
web page). protocol.py: the wire format, no framework; batcher.py: dynamic batching for one
model; service.py: the served models and what is said of them; app.py: the HTTP endpoints.
The command line is apps/serve.py."""
