"""HL7 v2: the tolerant codec, ACKs, the MLLP listener, inbound application and the outbox
dispatcher (issue 6). Layers: this package calls his.services, never the reverse."""
