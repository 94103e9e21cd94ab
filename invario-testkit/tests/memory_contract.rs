//! The memory adapters, the reference model, pass the contract suite themselves.

use invario_testkit::{
    catalog_contract_tests, fresh_memory_catalog, fresh_memory_key_store, fresh_memory_ledger,
    key_store_contract_tests, ledger_store_contract_tests,
};

catalog_contract_tests!(fresh_memory_catalog(), parallel_ledgers);

ledger_store_contract_tests!(fresh_memory_ledger(), cases = 64);
key_store_contract_tests!(fresh_memory_key_store());
