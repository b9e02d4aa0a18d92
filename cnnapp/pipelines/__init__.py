"""One function per command: data -> preprocessing -> model -> shared training -> export.

These hold only what is specific to a kind of data; everything shared lives in
`cnnapp.training` and `cnnapp.export`.
"""
