"""The ANS attendance protocol (RN 623): the number's allocator and records, the IVR over FastAGI, the HTTP API."""
