"""Fake Brazilian-Portuguese page content: hand-written sentence templates filled with Faker pt_BR names and places.

Faker's pt_BR `text()` is Latin lorem ipsum, so body text comes from the templates below; Faker only fills the
slots (people, cities, companies, CPF/CNPJ). Dates and amounts come from the seeded `rng`, never from the clock.
"""

from __future__ import annotations

import random

from faker import Faker

from dharma_train.data.schema import PageAnswer

FAMILIES = ("printed", "handwritten", "legal")
DEFAULT_MAX_WORDS = 40

# State abbreviation -> (name, the contraction Portuguese uses after "Estado": "de São Paulo", "da Bahia", "do Pará").
STATES = {
    "AC": ("Acre", "do"), "AL": ("Alagoas", "de"), "AP": ("Amapá", "do"), "AM": ("Amazonas", "do"),
    "BA": ("Bahia", "da"), "CE": ("Ceará", "do"), "DF": ("Distrito Federal", "do"), "ES": ("Espírito Santo", "do"),
    "GO": ("Goiás", "de"), "MA": ("Maranhão", "do"), "MT": ("Mato Grosso", "de"), "MS": ("Mato Grosso do Sul", "de"),
    "MG": ("Minas Gerais", "de"), "PA": ("Pará", "do"), "PB": ("Paraíba", "da"), "PR": ("Paraná", "do"),
    "PE": ("Pernambuco", "de"), "PI": ("Piauí", "do"), "RJ": ("Rio de Janeiro", "do"),
    "RN": ("Rio Grande do Norte", "do"), "RS": ("Rio Grande do Sul", "do"), "RO": ("Rondônia", "de"),
    "RR": ("Roraima", "de"), "SC": ("Santa Catarina", "de"), "SP": ("São Paulo", "de"), "SE": ("Sergipe", "de"),
    "TO": ("Tocantins", "do"),
}

BOOK_TITLES = (
    "A formação das cidades", "Memórias do sertão", "Economia e sociedade no Brasil",
    "Introdução à história regional",
    "A língua portuguesa no Brasil", "Crônicas de uma época", "O café e a ferrovia", "Educação e cidadania",
    "Histórias da imigração", "Caminhos da política nacional", "A música das ruas", "Ciência e tradição",
)

PRINTED_SENTENCES = (
    "A história de {cidade} começa muito antes da chegada dos primeiros colonizadores à região.",
    "Segundo {nome}, a formação das cidades brasileiras não seguiu um plano único, "
    "mas respondeu às necessidades de cada época.",
    "Nas décadas seguintes, a população urbana cresceu de maneira acelerada "
    "e a economia passou a depender do comércio.",
    "Esse processo não ocorreu sem conflitos: "
    "as disputas pela terra e pela água marcaram a vida política do interior.",
    "Em {ano}, a publicação de um relatório sobre as condições de trabalho provocou intenso debate na imprensa.",
    "O autor observa que a educação pública só se tornou prioridade quando as famílias passaram a exigir escolas.",
    "Os dados reunidos neste capítulo mostram que a produção agrícola dobrou em menos de uma geração.",
    "A análise das cartas trocadas entre {nome} e seus editores revela uma preocupação constante com a linguagem.",
    "Não é possível compreender a música popular brasileira sem considerar as tradições africanas e indígenas.",
    "Como veremos adiante, a questão ambiental só ganhou espaço nas políticas públicas "
    "a partir da década de {decada}.",
    "A pesquisa foi realizada em {cidade}, com a participação de {numero} famílias de diferentes regiões.",
    "Para os historiadores, essa mudança representa o início de uma nova relação entre o Estado e a sociedade.",
    "A ferrovia ligava o porto às fazendas de café e transformou a paisagem de toda a região.",
    "Muitos desses documentos estão guardados no arquivo de {cidade} e ainda não foram catalogados.",
    "A linguagem do romance é simples, mas as personagens revelam uma complexidade surpreendente.",
    "Ao fim do século, a cidade já contava com iluminação elétrica, bondes e um teatro com mil lugares.",
)

HANDWRITTEN_SENTENCES = (
    "Na minha opinião, a educação é o caminho mais importante para mudar a realidade do país.",
    "Quando eu era criança, morava em {cidade} com meus avós e ia a pé para a escola.",
    "Hoje aprendi que a água é um recurso limitado e que precisamos economizar.",
    "Minha família sempre se reúne no domingo para almoçar e conversar sobre a semana.",
    "A tecnologia aproxima as pessoas, mas também pode nos afastar de quem está ao nosso lado.",
    "Olá, {primeiro_nome}! Espero que você esteja bem e que a viagem tenha sido tranquila.",
    "Não se esqueça de comprar pão, leite, café e açúcar na volta do trabalho.",
    "O meio ambiente precisa de atenção, pois a poluição dos rios afeta a saúde de todos.",
    "Ontem choveu muito e a rua ficou alagada até a esquina da padaria.",
    "É preciso respeitar as diferenças e garantir que todos tenham as mesmas oportunidades.",
    "No próximo mês vou começar um curso de informática na escola do bairro.",
    "A reunião foi marcada para o dia {data}, às {hora}, na casa de {primeiro_nome}.",
)

# One formal document per kind; sentences stay in order because legal text has a fixed structure.
LEGAL_DOCUMENTS = {
    "ofício": (
        "Ofício nº {numero}/{ano}. Senhor(a) {nome}, comunicamos a Vossa Senhoria "
        "que o requerimento protocolado em {data} foi deferido.",
        "Solicitamos o comparecimento a esta repartição no dia {data2}, munido(a) de documento de identificação.",
        "Sem mais para o momento, apresentamos nossos protestos de elevada estima e consideração.",
    ),
    "certidão": (
        "Certifico, a pedido da parte interessada, que revendo os livros deste cartório "
        "encontrei o registro de {nome}, nascido(a) em {data}, em {cidade}/{uf}.",
        "Certifico ainda que não constam averbações à margem do termo até a presente data.",
        "O referido é verdade e dou fé.",
    ),
    "contrato": (
        "Pelo presente instrumento particular, {empresa}, inscrita no CNPJ sob o nº {cnpj}, "
        "e {nome}, CPF nº {cpf}, celebram o presente contrato.",
        "O valor total deste contrato é de {valor}, a ser pago em {parcelas} parcelas mensais e sucessivas.",
        "Fica eleito o foro da comarca de {cidade}/{uf} para dirimir quaisquer questões oriundas deste contrato.",
    ),
    "procuração": (
        "Pelo presente instrumento, {nome}, inscrito(a) no CPF sob o nº {cpf}, nomeia e constitui "
        "seu procurador {nome2}, com poderes para representá-lo(a) perante repartições públicas.",
        "A presente procuração é válida até {data2}, podendo ser revogada a qualquer tempo.",
    ),
}


def make_answer(rng: random.Random, faker: Faker, family: str, max_words: int = DEFAULT_MAX_WORDS) -> PageAnswer:
    """One page's ground truth; all randomness comes from `rng` and the seeded `faker`, so a seed fixes it.

    Handwritten pages get three quarters of `max_words`: real handwritten samples hold less text per page.
    """
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    fields = slot_values(rng, faker)
    if family == "printed":
        return _printed_answer(rng, fields, max_words)
    if family == "handwritten":
        return _handwritten_answer(rng, fields, max(1, max_words * 3 // 4))
    if family == "legal":
        return _legal_answer(rng, fields, max_words)
    raise ValueError(f"unknown page family {family!r}; expected one of {list(FAMILIES)}")


def slot_values(rng: random.Random, faker: Faker) -> dict[str, str]:
    """Values for every template slot, drawn once per page so one page talks about one person and one place."""
    uf = rng.choice(sorted(STATES))
    return {
        "nome": faker.name(), "nome2": faker.name(), "primeiro_nome": faker.first_name(),
        "cidade": _capitalized(faker.city()), "uf": uf, "estado": STATES[uf][0], "estado_de": STATES[uf][1],
        "empresa": faker.company(), "cpf": faker.cpf(), "cnpj": faker.cnpj(),
        "rua": faker.street_name(), "numero_rua": faker.building_number(), "bairro": faker.bairro(),
        "cep": f"{rng.randint(1000, 99999):05d}-{rng.randint(0, 999):03d}",
        "data": format_date(rng), "data2": format_date(rng), "ano": str(rng.randint(1950, 2024)),
        "decada": str(rng.randrange(1950, 2000, 10)), "numero": str(rng.randint(12, 980)),
        "valor": format_reais(rng.uniform(150, 250_000)), "parcelas": str(rng.randint(2, 48)),
        "hora": f"{rng.randint(7, 19)}h{rng.choice(('00', '15', '30', '45'))}",
        "pagina": str(rng.randint(2, 399)),
    }


def format_date(rng: random.Random) -> str:
    """A Brazilian dd/mm/aaaa date; day capped at 28 so every month is valid without a calendar."""
    return f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1950, 2024)}"


def format_reais(amount: float) -> str:
    """Brazilian currency: dot for thousands, comma for cents (R$ 1.234,56)."""
    english = f"{amount:,.2f}"
    return "R$ " + english.translate(str.maketrans(",.", ".,"))


def bounded_paragraph(sentences: list[str], max_words: int) -> str:
    """Whole sentences up to `max_words`; a first sentence that is already too long is cut at a word boundary."""
    words: list[str] = []
    for sentence in sentences:
        sentence_words = sentence.split()
        if len(words) + len(sentence_words) > max_words:
            break
        words.extend(sentence_words)
    if not words and sentences:
        words = sentences[0].split()[:max_words]
    return " ".join(words)


def _capitalized(name: str) -> str:
    """Faker invents cities such as "da Luz de Novaes"; a sentence needs them capitalised."""
    return name[:1].upper() + name[1:]


def _fill(template: str, fields: dict[str, str]) -> str:
    """Templates name their slots, so a typo in a slot name fails loudly here."""
    return template.format_map(fields)


def _shuffled_sentences(rng: random.Random, templates: tuple[str, ...], fields: dict[str, str]) -> list[str]:
    """Random order without repeats, so short paragraphs still vary between pages."""
    return [_fill(template, fields) for template in rng.sample(templates, len(templates))]


def _printed_answer(rng: random.Random, fields: dict[str, str], max_words: int) -> PageAnswer:
    """A book or article page: running head, usually no margin note, the page number underneath."""
    title = rng.choice(BOOK_TITLES)
    header = rng.choice((
        f"Capítulo {rng.randint(1, 12)} — {title}", title.upper(), title, fields["nome"],
    ))
    notes = ("Ver nota {numero}.", "cf. p. {pagina}", "Importante!", "Revisão")
    margin = rng.choice(notes) if rng.random() < 0.2 else ""
    page = fields["pagina"]
    footer = rng.choice((page, f"— {page} —", f"Página {page}", f"{page} | {title}"))
    text = bounded_paragraph(_shuffled_sentences(rng, PRINTED_SENTENCES, fields), max_words)
    return PageAnswer(header=header, margin=_fill(margin, fields), footer=footer, text=text)


def _handwritten_answer(rng: random.Random, fields: dict[str, str], max_words: int) -> PageAnswer:
    """A school essay, note or letter: headers and footers are often missing, the body is short."""
    header = rng.choice((
        "Redação", "Nome: {nome}", "{cidade}, {data}", "Tema: A importância da leitura", "Diário — {data}",
    )) if rng.random() < 0.4 else ""
    grade = f"Nota: {rng.randint(4, 10)},{rng.choice('05')}"
    margin = rng.choice(("Rascunho", "Revisar", grade, "OK")) if rng.random() < 0.15 else ""
    footer = rng.choice(("{primeiro_nome}", "{pagina}", "Obrigado(a)!")) if rng.random() < 0.3 else ""
    text = bounded_paragraph(_shuffled_sentences(rng, HANDWRITTEN_SENTENCES, fields), max_words)
    return PageAnswer(header=_fill(header, fields), margin=_fill(margin, fields),
                      footer=_fill(footer, fields), text=text)


def _legal_answer(rng: random.Random, fields: dict[str, str], max_words: int) -> PageAnswer:
    """An ofício, certidão, contrato or procuração: institution on top, a stamp or folio in the margin."""
    kind = rng.choice(sorted(LEGAL_DOCUMENTS))
    header = rng.choice((
        "TRIBUNAL DE JUSTIÇA DO ESTADO {estado_de} {estado}", "PREFEITURA MUNICIPAL DE {cidade}",
        "CARTÓRIO DO {ordinal} OFÍCIO DE NOTAS DE {cidade}", "MINISTÉRIO PÚBLICO DO ESTADO {estado_de} {estado}",
        "REGISTRO CIVIL DAS PESSOAS NATURAIS", "CÂMARA MUNICIPAL DE {cidade}", "{empresa}",
    ))
    margin = rng.choice((
        "Fls. {fls}", "CONFERE COM O ORIGINAL", "Proc. nº {numero}/{ano}", "Selo digital {selo}", "",
    ))
    footer = rng.choice((
        "{rua}, {numero_rua} — {bairro}, {cidade}/{uf} — CEP {cep} — Página {folha}",
        "{rua}, {numero_rua}, {cidade}/{uf} — fls. {folha}",
        "CEP {cep} — {cidade}/{uf} — {folha}",
    ))
    extra = {"ordinal": f"{rng.randint(1, 9)}º", "fls": str(rng.randint(1, 250)), "folha": str(rng.randint(1, 9)),
             "selo": "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", k=8))}
    slots = {**fields, **extra}
    text = bounded_paragraph([_fill(sentence, slots) for sentence in LEGAL_DOCUMENTS[kind]], max_words)
    return PageAnswer(header=_fill(header, slots).upper(), margin=_fill(margin, slots),
                      footer=_fill(footer, slots), text=text)
