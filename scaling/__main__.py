from scaling.cli import app

app()
