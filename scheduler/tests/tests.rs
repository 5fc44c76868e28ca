//! The scheduler's pure core: consensus and the credit ledger.

mod it;
