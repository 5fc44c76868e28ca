mod consensus;
mod grid;
mod ledger;
mod task;
