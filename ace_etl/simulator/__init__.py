"""A loopback stand-in for the ACE IoT API (both the real shape and the design-document shape)."""
