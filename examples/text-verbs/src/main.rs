//! `sft-text-server`: `sft-server` with the `WC`, `HEAD` and `TOUCH` verbs; the same flags.

fn main() {
    sft_server::run_main(sft_text_verbs::registry());
}
