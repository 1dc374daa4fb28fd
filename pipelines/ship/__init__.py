"""What a trained model goes out as: export, report.html, explain, features and tokenizer export.
Imports store/ and below; never train/ or serve/.
"""
