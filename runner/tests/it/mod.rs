mod cache;
mod check;
mod determinism;
mod files;
mod fuel;
mod nan;
mod outcomes;
mod rejections;
