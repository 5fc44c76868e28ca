mod api;
mod consensus;
mod crash;
mod grid;
mod ledger;
mod nodes;
mod s3;
mod task;
