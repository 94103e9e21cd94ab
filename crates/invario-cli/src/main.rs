//! `invario`, the operator's CLI (commands arrive with the CLI issue).

fn main() {
    eprintln!("invario: no commands yet; see the README for what is built so far");
    std::process::exit(2);
}
