"""The Azure adapter: the only package that imports azure.*; it speaks jitctl's dataclasses."""
