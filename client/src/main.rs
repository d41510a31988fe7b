//! `quorumkv`: the command-line tool. Everything is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    quorumkv_client::cli::main()
}
