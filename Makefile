# Shortcuts for the two README commands and the measured runs of Appendix B.
.PHONY: book test quick-table full-table
book:          ## set up and build the book, executing every notebook
	bash scripts/build_book.sh
test:          ## set up and run every test (what CI runs)
	bash scripts/test.sh
quick-table:   ## run every notebook in the quick profile: book/runtimes/quick.csv
	.venv/bin/python scripts/run_notebooks.py --profile quick
full-table:    ## run every notebook in the full profile (GPU): book/runtimes/full.csv
	.venv/bin/python scripts/run_notebooks.py --profile full
