//! Test support: contract suite for adapters, proptest strategies, database harness, tamper helpers.
