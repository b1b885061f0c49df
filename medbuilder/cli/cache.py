"""`medbuilder cache list | clear [KEY]`: the store of preprocessed images shared by builds."""

from __future__ import annotations

import time

import typer

from medbuilder.settings import get_settings

app = typer.Typer(help="The store of preprocessed images (MEDBUILDER_CACHE_DIR, limit MEDBUILDER_CACHE_MAX_GB).",
                  no_args_is_help=True)


@app.command("list")
def list_chains() -> None:
    """One line per dataset and preprocessing: its key, task, image size, entries, size, when it was last used
    and the dataset."""
    from medbuilder.cache import store_for

    store = store_for(get_settings())
    chains = store.summary()
    total = sum(c.bytes for c in chains)
    typer.echo(f"{store.root}: {len(chains)} preprocessings, {sum(c.entries for c in chains)} images, "
               f"{total / 2**20:.1f} MiB of {store.max_bytes / 2**30:.1f} GiB")
    for chain in chains:
        config = chain.what.get("config", {})
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(chain.last_used)) if chain.last_used else "never"
        part, _, key = chain.key.partition("/")
        typer.echo(f"{part[:8]}/{key[:12]}  {chain.what.get('task', '?'):12} {chain.what.get('kind', '?'):5} "
                   f"size {config.get('image_size')}  {chain.entries:6} images  {chain.bytes / 2**20:8.1f} MiB  "
                   f"last used {used}  {chain.what.get('dataset', '')}")


@app.command()
def clear(key: str = typer.Argument(None, help="Only the preprocessing whose key (or dataset/key, as `cache list` "
                                               "shows it) starts so.")) -> None:
    """Remove preprocessed images (all, or one preprocessing's); builds make them again when they need them."""
    from medbuilder.cache import store_for

    removed = store_for(get_settings()).clear(key)
    typer.echo(f"removed {removed} preprocessed images")
