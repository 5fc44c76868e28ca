//! Reads /in/name.txt and writes a greeting to /out/greeting.txt and standard output.
fn main() {
    let name = std::fs::read_to_string("/in/name.txt").expect("read /in/name.txt");
    let greeting = format!("hello, {}!\n", name.trim());
    std::fs::write("/out/greeting.txt", &greeting).expect("write /out/greeting.txt");
    print!("{greeting}");
    eprintln!("greeted {}", name.trim());
}
