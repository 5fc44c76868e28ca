mod consensus;
mod ledger;
mod task;
