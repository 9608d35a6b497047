//! SAS tokens: parsing, permissions, signing.
