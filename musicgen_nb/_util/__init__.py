"""Private helpers shared by every layer.

Array coercion, argument checks, atomic files, memory figures and the display registry.
This package imports nothing from musicgen_nb.
"""
