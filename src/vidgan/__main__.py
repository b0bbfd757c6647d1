from vidgan.cli import app

app(prog_name="vidgan")
