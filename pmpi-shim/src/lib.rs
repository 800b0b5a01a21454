//! PMPI shim (being written).
