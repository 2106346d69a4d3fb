fn main() {
    std::process::exit(snapnest::cli::main_with_args(std::env::args_os()));
}
