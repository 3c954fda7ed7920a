//! `sft-server`: serve a folder over the sft protocol until stopped.

fn main() {
    sft_server::run_main(sft_server::Binary::SFT_SERVER, sft_commands::builtins());
}
