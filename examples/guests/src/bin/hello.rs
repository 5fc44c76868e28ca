//! The smallest useful Helio job: reads `/in/name.txt`, writes `/out/greeting.txt`.
fn main() {
    let name = std::fs::read_to_string("/in/name.txt").expect("read /in/name.txt");
    let greeting = format!("hello, {}!\n", name.trim());
    std::fs::write("/out/greeting.txt", &greeting).expect("write /out/greeting.txt");
    print!("{greeting}");
}
