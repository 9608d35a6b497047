fn main() {
    std::process::exit(blobmount::cli::main());
}
