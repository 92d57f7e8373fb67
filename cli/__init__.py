"""The `carehub` command (Typer) and the demo: the outermost shell, free to import every
package of the project; nothing imports it back."""
