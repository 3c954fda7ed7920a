//! `sft-text-server`: `sft-server` with the `WC` and `HEAD` verbs; the same flags.

fn main() {
    sft_server::run_main(sft_text_verbs::registry());
}
