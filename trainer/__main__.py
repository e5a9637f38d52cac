from trainer.cli import app

app(prog_name="fer-trainer")
