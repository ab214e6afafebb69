"""The command line shared by both twins: main.py assembles it, one module per subcommand
(prepare, train, sample, eval, chat, finetune, gradcheck, exercise, plot, export)."""
