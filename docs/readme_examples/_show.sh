# Sourced by the scripts here: `show "COMMAND   # note"` prints the prompt line as the README shows it,
# then runs COMMAND (the note is a shell comment) with stderr beside stdout, as a terminal shows them.
# A failing command is part of the example (cnnapp's one-line errors); make readme still stops on a traceback.
show() {
    printf '$ %s\n' "$1"
    bash -c "$1" 2>&1 || true
}
