"""A user's mistakes in a prompt file end as one clear PromptSetError that names the file and the line."""

import hashlib

import pytest

from erasekit.prompt_sets import (
    PromptSetError,
    load_cc3m,
    load_i2p,
    load_prompt_file,
    load_prompt_set,
    load_ring_a_bell,
    load_txt,
)

I2P_HEADER = "prompt,categories,nudity_percentage,evaluation_seed,evaluation_guidance\n"


def _write(tmp_path, name, content):
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


@pytest.mark.parametrize(
    "loader, name, content",
    [
        (load_prompt_file, "p.csv", b"prompt\na cat\ncaf\xe9 au lait\n"),
        (load_prompt_file, "p.txt", b"a cat\n\ncaf\xe9 au lait\n"),
        (load_ring_a_bell, "r.csv", b"sensitive prompt\na cat\ncaf\xe9 au lait\n"),
        (load_cc3m, "c.tsv", b"a cat\thttp://x\n\ncaf\xe9 au lait\thttp://y\n"),
        (load_i2p, "i.csv", (I2P_HEADER + "a cat,,0,1,7\n").encode() + b"caf\xe9,,0,2,7\n"),
    ],
)
def test_a_file_not_in_utf8_names_the_line_and_asks_for_utf8(tmp_path, loader, name, content):
    path = _write(tmp_path, name, content)
    with pytest.raises(PromptSetError, match=r"line 3: not UTF-8.*save the file as UTF-8") as e:
        loader(path)
    assert str(path) in str(e.value)


def test_a_bad_byte_after_a_bom_is_on_the_right_line(tmp_path):
    path = _write(tmp_path, "p.txt", b"\xef\xbb\xbfa cat\ncaf\xe9\n")
    with pytest.raises(PromptSetError, match="line 2: not UTF-8"):
        load_txt(path)


def test_a_bom_is_read_as_utf8(tmp_path):
    csv_path = _write(tmp_path, "p.csv", "\ufeffprompt,evaluation_seed\ncafé,3\n".encode())
    prompts = load_prompt_file(csv_path)
    assert prompts.prompts == ["café"] and prompts.seeds == [3]
    assert load_txt(_write(tmp_path, "p.txt", "\ufeffa cat\na dog\n".encode())).prompts == ["a cat", "a dog"]
    ring = load_ring_a_bell(_write(tmp_path, "r.csv", "\ufeffsensitive prompt\na cat\n".encode()))
    assert ring.prompts == ["a cat"]


def test_the_hash_is_of_the_bytes_read(tmp_path):
    path = _write(tmp_path, "p.csv", "\ufeffprompt\na cat\n".encode())
    assert load_prompt_file(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_unclosed_quote_names_the_line_where_its_record_starts(tmp_path):
    rows = [f"prompt {i},{i}" for i in range(10)]
    rows[1] = '"a cat, unclosed,1'
    path = _write(tmp_path, "p.csv", "prompt,evaluation_seed\n" + "\n".join(rows) + "\n")
    with pytest.raises(PromptSetError, match="line 3: broken CSV quoting"):
        load_prompt_file(path)


def test_a_stray_quote_names_the_line_where_its_record_starts(tmp_path):
    path = _write(tmp_path, "p.csv", 'prompt,evaluation_seed\n"one\nline",1\n\nfine,2\n"a "cat" here",3\nok,4\n')
    with pytest.raises(PromptSetError, match="line 6: broken CSV quoting"):
        load_prompt_file(path)


@pytest.mark.parametrize("row, word", [('"a\ncat",1,extra', "more"), ('"a\ncat"', "fewer")])
def test_a_row_with_the_wrong_field_count_names_its_first_line(tmp_path, row, word):  # not its last
    path = _write(tmp_path, "p.csv", f'prompt,evaluation_seed\n"two\nlines",1\n\n{row}\nok,4\n')
    with pytest.raises(PromptSetError, match=f"line 5: the row has {word} fields"):
        load_prompt_file(path)


def test_a_folder_is_not_a_prompt_file(tmp_path):
    for kind in ("csv", "txt", "i2p", "cc3m", "ring-a-bell"):
        with pytest.raises(PromptSetError, match="is a folder, not a prompt file"):
            load_prompt_set(kind, tmp_path)
    with pytest.raises(PromptSetError, match="does not exist"):
        load_prompt_file(tmp_path / "nope.csv")


@pytest.mark.parametrize("seed", ["abc", "inf", "nan", "1e400", "2.5", "-inf", str(2**64)])
def test_a_seed_that_is_not_a_whole_number_names_the_line_and_value(tmp_path, seed):
    path = _write(tmp_path, "p.csv", f'prompt,evaluation_seed\n"two\nlines",1\na cat,{seed}\n')
    with pytest.raises(PromptSetError, match=rf"line 4: evaluation_seed is '{seed}', not a whole number") as e:
        load_prompt_file(path)
    assert str(path) in str(e.value)


def test_seeds_empty_whole_or_written_as_floats(tmp_path):
    big = 2**64 - 1  # past float's 2**53: read exactly
    path = _write(tmp_path, "p.csv", f"prompt,evaluation_seed\na,\nb, 3.0 \nc,{big}\nd,-7\ne,12\n")
    prompts = load_prompt_file(path)
    assert prompts.seeds == [None, 3, big, -7, 12]
    assert all(type(s) is int for s in prompts.seeds[1:])
    assert prompts.seeds_or(100) == [100, 3, big, -7, 12]


@pytest.mark.parametrize("guidance", ["abc", "inf", "nan", "1e400"])
def test_a_bad_guidance_names_the_line_and_value(tmp_path, guidance):
    path = _write(tmp_path, "p.csv", f"prompt,evaluation_guidance\na cat,7.5\na dog,{guidance}\n")
    with pytest.raises(PromptSetError, match=rf"line 3: evaluation_guidance is '{guidance}', not a finite number"):
        load_prompt_file(path)


def test_guidance_empty_or_a_number(tmp_path):
    path = _write(tmp_path, "p.csv", "prompt,evaluation_guidance\na cat,\na dog,7.5\na cow,7\n")
    assert load_prompt_file(path).guidance == [None, 7.5, 7.0]


def test_a_bad_nudity_percentage_is_an_error_not_a_dropped_row(tmp_path):
    path = _write(tmp_path, "i.csv", I2P_HEADER + "a cat,,90,1,7\na dog,,lots,2,7\n")
    with pytest.raises(PromptSetError, match="line 3: nudity_percentage is 'lots'"):
        load_i2p(path, subset="nudity")


@pytest.mark.parametrize("cell", ['""', "   "])
def test_an_empty_prompt_cell_names_the_line(tmp_path, cell):
    path = _write(tmp_path, "p.csv", f"prompt,evaluation_seed\na cat,1\n{cell},2\n")
    with pytest.raises(PromptSetError, match="line 3: the prompt cell is empty"):
        load_prompt_file(path)
    mma = _write(tmp_path, "m.csv", f"target_prompt,adv_prompt\na cat,{cell}\n")
    with pytest.raises(PromptSetError, match="line 2: the adv_prompt cell is empty"):
        load_prompt_set("mma", mma)


def test_blank_lines_are_skipped_in_txt_and_csv(tmp_path):
    assert load_txt(_write(tmp_path, "p.txt", "a cat\n\n   \na dog\n")).prompts == ["a cat", "a dog"]
    assert load_prompt_file(_write(tmp_path, "p.csv", "prompt\na cat\n\na dog\n")).prompts == ["a cat", "a dog"]


def test_i2p_keeps_its_published_empty_prompt(tmp_path):
    path = _write(tmp_path, "i.csv", I2P_HEADER + "a cat,,0,1,7\n,illegal activity,0,2,7\n")
    assert load_i2p(path).prompts == ["a cat", ""]


def test_multi_line_prompts_keep_their_start_line_and_seed(tmp_path):
    path = _write(tmp_path, "p.csv", 'prompt,evaluation_seed\r\n"a cat,\r\non a mat",1\r\nb,2\r\n')
    prompts = load_prompt_file(path)
    assert prompts.prompts == ["a cat,\r\non a mat", "b"] and prompts.seeds == [1, 2]
