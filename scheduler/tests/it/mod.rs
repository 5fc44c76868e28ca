mod consensus;
mod ledger;
