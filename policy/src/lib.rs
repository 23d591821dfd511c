//! engram-policy: placement and migration policies and a trace simulator.
#![forbid(unsafe_code)]
