"""`vidgan library ...` and `vidgan serve`: parse, call the library API, print. Errors are one line, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from vidgan.errors import fail, known_errors

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="A library of generated clips: provenance, search, duplicates, export, a web gallery."
)


def _open(lib: Path):
    from vidgan.library.catalog import Library

    return Library.open(lib)


def _query(model, label, text, tag, min_score, sort, limit=None, deleted=False, ids=None):
    from vidgan.library.queries import ClipQuery, parse_scores

    return ClipQuery(
        model=model,
        label=label,
        text=text,
        tags=list(tag or []),
        min_scores=parse_scores(min_score or []),
        sort=sort,
        limit=limit,
        only_deleted=deleted,
        ids=list(ids) if ids else None,
    )


LIB_ARG = typer.Argument(..., help="library folder (made by `vidgan library init`)")


@app.command()
def init(
    lib: Path = typer.Argument(..., help="folder to create: LIB/library.db (SQLite) + LIB/store/"),
    db: str | None = typer.Option(
        None, help="a database server instead of SQLite, e.g. postgresql://user@host/db (kept in LIB/library.json)"
    ),
) -> None:
    """Create a library (or report on an existing one)."""
    from vidgan.library.catalog import Library
    from vidgan.library.queries import count_clips

    try:
        with Library.init(lib, db) as library, library.session() as s:
            n = count_clips(s)
    except known_errors() as err:
        fail(err)
    where = db.split("@")[-1] if db else str(Path(lib) / "library.db")
    typer.echo(f"library {lib}: {n} clips, catalog {where}, files in {Path(lib) / 'store'}")


@app.command()
def add(
    lib: Path = LIB_ARG,
    files: list[Path] = typer.Argument(..., help="clip files (mp4, webm, gif, avi, ...) or folders of frames"),
    tag: list[str] = typer.Option([], "--tag", help="tag every added clip (repeatable)"),
    caption: str | None = typer.Option(None, help="caption (searchable with ls --text)"),
    model: str | None = typer.Option(None, help="model name, for files without a generated.json beside them"),
    label: str | None = typer.Option(None, help="class index or name, for files without a generated.json"),
    score: list[str] = typer.Option([], "--score", help="METRIC=VALUE (repeatable)"),
    fps: float | None = typer.Option(None, min=0.01, max=1000.0, help="frame rate of folders of frames (they carry none; default 25)"),
    threshold: float = typer.Option(0.015, min=0.0, max=1.0, help="near-duplicate threshold on the perceptual-hash distance (0..1)"),
    skip_duplicates: bool = typer.Option(False, help="skip near-duplicates instead of adding them flagged"),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON"),
) -> None:
    """Add clip files to the library (provenance comes from a generated.json beside them, if any)."""
    from vidgan.library.ingest import Ingester, add_files, provenance_from_manifest
    from vidgan.library.queries import parse_scores

    failures: list[str] = []
    try:
        library = _open(lib)
        scores = parse_scores(score)
        ingester = Ingester(library, threshold=threshold, skip_duplicates=skip_duplicates)
        results = []
        for path in files:
            provenance = provenance_from_manifest(path) or {}
            if model is not None:
                provenance["model"] = model
            if label is not None:
                key = "label" if label.isdigit() else "label_name"
                provenance[key] = int(label) if label.isdigit() else label
            results += add_files(
                library,
                [path],
                ingester,
                on_error=lambda e: failures.append(str(e)),
                provenance=provenance or None,
                tags=tag,
                scores=scores,
                caption=caption,
                fps=fps if path.is_dir() else None,
            )
        library.close()
    except known_errors() as err:
        fail(err)
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in results], indent=1))
    else:
        for r in results:
            typer.echo(r.line())
    for message in failures:
        typer.echo(f"error: {message}", err=True)
    if failures:
        raise typer.Exit(1)


@app.command("ls")
def ls(
    lib: Path = LIB_ARG,
    model: str | None = typer.Option(None, help="only clips of this model"),
    label: str | None = typer.Option(None, help="only this class (index or name)"),
    text: str | None = typer.Option(None, help="words in the caption, condition text, tags, model or file name"),
    tag: list[str] = typer.Option([], "--tag", help="only clips with this tag (repeatable: all of them)"),
    min_score: list[str] = typer.Option([], "--min-score", help="METRIC=V: only clips scoring at least V (repeatable)"),
    sort: str = typer.Option("id", help="id, created, or a metric name; '-' in front sorts descending (-motion)"),
    limit: int | None = typer.Option(None, min=1, help="at most this many clips"),
    deleted: bool = typer.Option(False, help="list the deleted clips (that gc would remove)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON: every clip with provenance, scores and tags"),
) -> None:
    """List and search the clips."""
    from vidgan.library.queries import clip_dict, find_clips

    try:
        with _open(lib) as library, library.session() as s:
            total, clips = find_clips(library, s, _query(model, label, text, tag, min_score, sort, limit, deleted))
            rows = [clip_dict(c, full=as_json) for c in clips]
    except known_errors() as err:
        fail(err)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        scores = " ".join(f"{k}={v:.4g}" for k, v in r["scores"].items())
        label_text = r["label_name"] or ("" if r["label"] is None else str(r["label"]))
        dup = f" dup-of:{r['duplicate_of']}" if r["duplicate_of"] else ""
        typer.echo(
            f"{r['id']:>6}  {r['model'] or '-':<12} {label_text or '-':<6} {r['frames']}x{r['width']}x{r['height']} {r['format']:<4} "
            f"{scores}  [{', '.join(r['tags'])}]{dup}  {r['file']}"
        )
    typer.echo(f"{len(rows)} of {total} clips" if len(rows) < total else f"{total} clips")


@app.command()
def tag(
    lib: Path = LIB_ARG,
    ids: list[int] = typer.Argument(..., help="clip ids"),
    add: list[str] = typer.Option([], "--add", help="tag to add (repeatable)"),
    remove: list[str] = typer.Option([], "--remove", help="tag to remove (repeatable)"),
) -> None:
    """Add or remove tags."""
    from vidgan.library.maintenance import edit_tags

    if not add and not remove:
        fail("nothing to do: pass --add TAG and/or --remove TAG")
    try:
        with _open(lib) as library:
            result = edit_tags(library, ids, add, remove)
    except known_errors() as err:
        fail(err)
    for clip_id, tags in result.items():
        typer.echo(f"{clip_id}: {', '.join(tags) or '(no tags)'}")


@app.command()
def rm(
    lib: Path = LIB_ARG,
    ids: list[int] = typer.Argument(..., help="clip ids"),
    undo: bool = typer.Option(False, help="bring deleted clips back (before gc)"),
) -> None:
    """Delete clips (soft: hidden at once, files reclaimed by `gc`)."""
    from vidgan.library.maintenance import soft_delete

    try:
        with _open(lib) as library:
            done = soft_delete(library, ids, undo=undo)
    except known_errors() as err:
        fail(err)
    typer.echo(
        f"{'restored' if undo else 'deleted'} {len(done)} clips: {', '.join(map(str, done))}"
        + ("" if undo else " (run `gc` to free the space)")
    )


@app.command()
def gc(lib: Path = LIB_ARG) -> None:
    """Remove deleted clips for good and free their files."""
    from vidgan.library.maintenance import collect_garbage

    try:
        with _open(lib) as library:
            clips, files, freed = collect_garbage(library)
    except known_errors() as err:
        fail(err)
    typer.echo(f"removed {clips} clips and {files} files ({freed / 1e6:.1f} MB)")


@app.command()
def export(
    lib: Path = LIB_ARG,
    to: Path = typer.Option(..., "--to", help="a folder, or a file ending in .zip"),
    ids: list[int] = typer.Option([], "--id", help="export these clips (repeatable); filters narrow further"),
    model: str | None = typer.Option(None),
    label: str | None = typer.Option(None),
    text: str | None = typer.Option(None),
    tag: list[str] = typer.Option([], "--tag"),
    min_score: list[str] = typer.Option([], "--min-score", help="METRIC=V"),
    sort: str = typer.Option("id"),
    limit: int | None = typer.Option(None, min=1),
) -> None:
    """Copy matching clips to a folder or a zip, with manifest.json carrying their provenance."""
    from vidgan.library.export import export_clips

    try:
        with _open(lib) as library:
            count, target = export_clips(library, _query(model, label, text, tag, min_score, sort, limit, ids=ids), to)
    except known_errors() as err:
        fail(err)
    typer.echo(f"exported {count} clips to {target} (with manifest.json)")


@app.command()
def check(
    lib: Path = LIB_ARG,
    repair: bool = typer.Option(False, help="fix what can be fixed: drop rows without files, remove orphan files, rebuild previews"),
    verify: bool = typer.Option(False, help="also re-hash every clip file (slow on big libraries)"),
    grace: float = typer.Option(
        600.0, min=0.0, help="temporary files younger than this many seconds are left alone (an ingest may be running)"
    ),
) -> None:
    """Check that catalog and files agree. Exit 1 when problems remain."""
    from vidgan.library.maintenance import check_library

    try:
        with _open(lib) as library:
            report = check_library(library, repair=repair, verify=verify, grace=grace)
            after = check_library(library, verify=verify, grace=grace) if repair else report
    except known_errors() as err:
        fail(err)
    for line in report.lines():
        typer.echo(line)
    remaining = after.problems
    if remaining:
        typer.echo(f"{remaining} problems" + ("" if repair else "; run with --repair to fix them"))
        raise typer.Exit(1)
    typer.echo("ok")


@app.command()
def regenerate(
    lib: Path = LIB_ARG,
    clip_id: int = typer.Argument(..., min=1, help="the clip to make again"),
    run: Path | None = typer.Option(None, help="the run folder, if it moved since the clip was made"),
    device: str | None = typer.Option(None, help="default: the device the clip was made on"),
    out: Path | None = typer.Option(None, help="also write the regenerated clip here"),
) -> None:
    """Make a clip again from its provenance and check that it is identical. Exit 1 if it is not."""
    from vidgan.library.provenance import regenerate as run_regenerate

    try:
        with _open(lib) as library:
            result = run_regenerate(library, clip_id, run=run, device=device, out=out)
    except known_errors() as err:
        fail(err)
    marks = {True: "identical", False: "DIFFERENT", None: "not recorded"}
    typer.echo(
        f"clip {clip_id}: generator output {marks[result.output_match]}; decoded frames {marks[result.decoded_match]}; "
        f"file bytes {marks[result.file_match]}" + (f"; written to {result.file}" if result.file else "")
    )
    if not result.identical:
        raise typer.Exit(1)


def serve(
    lib: Path = typer.Argument(..., help="library folder"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (127.0.0.1: this machine only)"),
    port: int = typer.Option(8000, min=1, max=65535),
    allow_edit: bool = typer.Option(False, help="allow tag editing from the gallery (read-only otherwise)"),
    allowed_host: list[str] | None = typer.Option(
        None, "--allowed-host", help="a host name or address browsers use to reach the gallery (repeatable; needed with --host 0.0.0.0)"
    ),
) -> None:
    """Browse a library in a web browser: previews, filters, provenance, downloads."""
    try:
        import uvicorn

        from vidgan.library.web import create_app
    except ImportError as err:
        fail(f"the gallery needs the web extra ({err.name} missing): pip install 'vidgan[web]'")
    try:
        web_app = create_app(lib, allow_edit=allow_edit, host=host, allowed_hosts=allowed_host)
    except known_errors() as err:
        fail(err)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: serving on {host}: anyone who can reach this address sees the library", err=True)
    if host in ("0.0.0.0", "::") and not allowed_host:
        typer.echo("note: only localhost names are accepted; pass --allowed-host NAME for each name or address others use", err=True)
    if allow_edit and web_app.state.library.read_only:
        typer.echo(f"note: the library is read-only ({web_app.state.library.read_only}); tags cannot be edited", err=True)
    typer.echo(
        f"gallery of {lib} at http://{'[' + host + ']' if ':' in host else host}:{port}/ ({'tags editable' if allow_edit else 'read-only'}); Ctrl-C stops"
    )
    uvicorn.run(web_app, host=host, port=port, log_level="warning")
