from nbmill.cli import console

console()
