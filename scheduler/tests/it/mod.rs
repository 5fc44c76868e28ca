mod api;
mod consensus;
mod crash;
mod grid;
mod ledger;
mod nodes;
mod task;
