#!/usr/bin/env bash
# Install Debian's LaTeX for `make paper` (run as root; idempotent, as slurm/install.sh which does the work):
# latexmk drives pdflatex; latex-base has graphicx, longtable and hyperref; latex-recommended booktabs and
# geometry; fonts-recommended the Type 1 fonts pdflatex embeds.
set -euo pipefail
exec bash "$(dirname "$0")/../slurm/install.sh" latexmk texlive-latex-base texlive-latex-recommended \
    texlive-fonts-recommended
