"""The authors' checkpoint layout: tensor names, shapes, lead order and time tables, both ways
(store/reference.py reads and writes the files)."""
