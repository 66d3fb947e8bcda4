"""
Benchmark of the chat server against a textbook Twisted server and ngircd.

C{python -m bench --help} lists the options; C{bench/README.md} explains the
workloads and what each figure means.
"""
