from transformers import AutoTokenizer

from musicgen_nb.checkpoints.tokenizer import build_tokenizer, corpus


def test_known_words_are_single_tokens_and_eos_is_appended():
    tok = build_tokenizer()
    pieces = tok.convert_ids_to_tokens(tok("Lo-fi beat with piano").input_ids)
    assert pieces == ["\u2581lo-fi", "\u2581beat", "\u2581with", "\u2581piano", "</s>"]


def test_any_text_encodes_without_unknowns_for_letters():
    tok = build_tokenizer()
    ids = tok("xylophone zither").input_ids
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "xylophone zither"


def test_saves_and_loads_offline(tmp_path):
    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert again("jazz piano").input_ids == tok("jazz piano").input_ids
    assert again.pad_token_id == 0 and again.eos_token_id == 1


def test_corpus_is_built_in():
    lines = corpus()
    assert len(lines) > 1000 and any("jazz" in line for line in lines)
