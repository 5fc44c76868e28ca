mod cache;
mod check;
mod determinism;
mod files;
mod outcomes;
mod rejections;
