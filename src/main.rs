fn main() {
    snapnest::localtime::adopt_openwrt_tz();
    std::process::exit(snapnest::cli::main_with_args(std::env::args_os()));
}
