//! Code shared by the example guests.

pub mod orbits;
