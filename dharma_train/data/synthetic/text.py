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
# Boletos, journal articles and two-line letterheads need a page with room: on a page of fewer words (a thumbnail)
# their long numbers and furniture would shrink past reading.
ROOMY_PAGE_WORDS = 80

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

# A small grammar continues the templates on long pages: subject + verb + object + complement gives tens of
# thousands of sentences, so a full 1024 px page does not repeat the same sixteen lines.
SUBJECTS = (
    "A pesquisa", "O governo municipal", "A população de {cidade}", "Essa mudança", "O estudo de {nome}",
    "A indústria têxtil", "O movimento operário", "A imprensa local", "A escola pública", "O comércio",
    "A nova legislação", "A crise econômica", "O porto de {cidade}", "A chegada da ferrovia", "A imigração",
    "O crescimento das cidades", "A produção agrícola", "A reforma do ensino", "O Estado brasileiro",
)
VERBS = (
    "transformou", "influenciou", "revelou", "ampliou", "reduziu", "questionou", "marcou", "reorganizou",
    "acompanhou", "favoreceu", "alterou profundamente", "pôs em evidência", "tornou visível", "limitou",
)
OBJECTS = (
    "a vida cotidiana", "as relações de trabalho", "a ocupação do território", "o acesso à educação",
    "a produção de café", "a paisagem urbana", "as eleições municipais", "a distribuição de renda",
    "a saúde pública", "o papel das mulheres", "a circulação de jornais", "as tradições religiosas",
    "o preço dos alimentos", "a formação de professores", "a organização dos bairros",
)
COMPLEMENTS = (
    "ao longo do século XX", "entre {ano} e {ano2}", "na região de {cidade}", "de forma desigual",
    "sem grandes conflitos", "apesar das críticas", "segundo os registros da época", "em poucas décadas",
    "de maneira decisiva", "no interior {estado_de} {estado}", "até a década de {decada}",
    "como mostram os documentos", "com apoio da população", "diante da resistência dos proprietários",
)
HANDWRITTEN_OPENINGS = (
    "Eu acho que", "Na minha opinião,", "Hoje percebi que", "Minha mãe sempre diz que", "Acredito que",
    "Todo mundo sabe que", "Na escola aprendemos que", "Às vezes penso que", "Meu avô contava que",
)
HANDWRITTEN_CLAUSES = (
    "a leitura abre muitas portas", "o bairro precisa de mais praças", "a saúde vem em primeiro lugar",
    "ninguém aprende sozinho", "a cidade cresceu demais", "o ônibus sempre atrasa de manhã",
    "a amizade é o maior presente", "é preciso cuidar dos animais", "o futebol une as famílias",
    "a internet mudou a nossa rotina", "a praia de {cidade} é a mais bonita", "o trabalho dignifica o homem",
    "devemos votar com consciência", "a música alegra qualquer dia", "estudar à noite é cansativo",
)
BANKS = (
    "BANCO DO BRASIL S.A. | 001-9", "CAIXA ECONÔMICA FEDERAL | 104-0", "BANCO BRADESCO S.A. | 237-2",
    "ITAÚ UNIBANCO S.A. | 341-7", "BANCO SANTANDER (BRASIL) S.A. | 033-7", "BANCO INTER S.A. | 077-9",
)
DEPARTMENTS = (
    "SECRETARIA MUNICIPAL DE ADMINISTRAÇÃO", "SECRETARIA DE ESTADO DA FAZENDA", "GABINETE DO PREFEITO",
    "DEPARTAMENTO DE RECURSOS HUMANOS", "COMARCA DE {cidade}", "VARA CÍVEL", "DIRETORIA DE PROTOCOLO",
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
        "O outorgado poderá assinar requerimentos, receber documentos e praticar todos os atos necessários.",
        "Fica vedado o substabelecimento sem a concordância expressa do(a) outorgante.",
    ),
}
# Further clauses that continue any legal document when the word budget allows a fuller page.
LEGAL_CLAUSES = (
    "Parágrafo único. As partes declaram ter lido e compreendido todas as condições deste instrumento.",
    "O descumprimento de qualquer obrigação sujeitará a parte infratora à multa de {valor}.",
    "Os documentos apresentados ficam arquivados nesta repartição sob o protocolo nº {numero}/{ano}.",
    "Nada mais havendo a tratar, lavrou-se o presente termo, que vai assinado pelos presentes.",
    "A autenticidade deste documento pode ser conferida no endereço eletrônico do órgão emissor.",
    "Fica ressalvado o direito de terceiros, nos termos da legislação vigente.",
    "{cidade}/{uf}, {data2}.",
)
# A boleto is a form: one "label: value" line per box, the order fixed by the bank's layout.
BOLETO_LINES = (
    "Beneficiário: {empresa}", "CNPJ: {cnpj}", "Pagador: {nome}", "CPF: {cpf}", "Vencimento: {data2}",
    "Valor do documento: {valor}", "Nosso número: {nosso_numero}", "Linha digitável: {linha_digitavel}",
)


def make_answer(rng: random.Random, faker: Faker, family: str, max_words: int = DEFAULT_MAX_WORDS) -> PageAnswer:
    """One page's ground truth; all randomness comes from `rng` and the seeded `faker`, so a seed fixes it.

    Handwritten pages get three quarters of `max_words`: real handwritten samples hold less text per page.
    Paragraphs are separated by a newline in `text`; the renderer starts a new paragraph at each one.
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
    year = rng.randint(1950, 2024)
    return {
        "nome": faker.name(), "nome2": faker.name(), "primeiro_nome": faker.first_name(),
        "cidade": _capitalized(faker.city()), "uf": uf, "estado": STATES[uf][0], "estado_de": STATES[uf][1],
        "empresa": faker.company(), "cpf": faker.cpf(), "cnpj": faker.cnpj(),
        "rua": faker.street_name(), "numero_rua": faker.building_number(), "bairro": faker.bairro(),
        "cep": f"{rng.randint(1000, 99999):05d}-{rng.randint(0, 999):03d}",
        "data": format_date(rng), "data2": format_date(rng), "ano": str(year), "ano2": str(year + rng.randint(3, 40)),
        "decada": str(rng.randrange(1950, 2000, 10)), "numero": str(rng.randint(12, 980)),
        "valor": format_reais(rng.uniform(150, 250_000)), "parcelas": str(rng.randint(2, 48)),
        "hora": f"{rng.randint(7, 19)}h{rng.choice(('00', '15', '30', '45'))}",
        "pagina": str(rng.randint(2, 399)),
        "nosso_numero": "".join(rng.choices("0123456789", k=11)) + "-" + rng.choice("0123456789"),
        "linha_digitavel": _digitable_line(rng),
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
    return " ".join(_bounded(sentences, max_words))


def bounded_text(rng: random.Random, sentences: list[str], max_words: int) -> str:
    """Whole sentences up to `max_words`, grouped into paragraphs of three to six sentences (newline between)."""
    kept = _bounded(sentences, max_words)
    paragraphs, start = [], 0
    while start < len(kept):
        size = rng.randint(3, 6)
        paragraphs.append(" ".join(kept[start:start + size]))
        start += size
    return "\n".join(paragraphs)


def _bounded(sentences: list[str], max_words: int) -> list[str]:
    """The leading sentences whose words fit in `max_words`, or the first one cut to fit."""
    kept: list[str] = []
    count = 0
    for sentence in sentences:
        words = len(sentence.split())
        if count + words > max_words:
            break
        kept.append(sentence)
        count += words
    if not kept and sentences:
        kept = [" ".join(sentences[0].split()[:max_words])]
    return kept


def _digitable_line(rng: random.Random) -> str:
    """A boleto's typed line: five groups of digits in the bank standard's shape (not a valid checksum)."""
    digits = lambda count: "".join(rng.choices("0123456789", k=count))  # noqa: E731
    return f"{digits(5)}.{digits(5)} {digits(5)}.{digits(6)} {digits(5)}.{digits(6)} {digits(1)} {digits(14)}"


def _capitalized(name: str) -> str:
    """Faker invents cities such as "da Luz de Novaes"; a sentence needs them capitalised."""
    return name[:1].upper() + name[1:]


def _fill(template: str, fields: dict[str, str]) -> str:
    """Templates name their slots, so a typo in a slot name fails loudly here."""
    return template.format_map(fields)


def _sentence_stream(rng: random.Random, templates: tuple[str, ...], fields: dict[str, str], max_words: int,
                     compose) -> list[str]:
    """The templates in random order, then composed sentences, until the budget is surely covered; no sentence
    twice on a page (after a few collisions the budget is simply left unfilled). Short pages read like natural
    prose; the grammar only fills pages longer than the templates."""
    stream = [_fill(template, fields) for template in rng.sample(templates, len(templates))]
    words = sum(len(sentence.split()) for sentence in stream)
    tries = 0
    while words <= max_words and tries < 4 * max_words:
        tries += 1
        sentence = compose(rng, fields)
        if sentence not in stream:
            stream.append(sentence)
            words += len(sentence.split())
    return stream


def _composed_printed(rng: random.Random, fields: dict[str, str]) -> str:
    subject, verb, obj, complement = (rng.choice(part) for part in (SUBJECTS, VERBS, OBJECTS, COMPLEMENTS))
    return _fill(f"{subject} {verb} {obj} {complement}.", fields)


def _composed_handwritten(rng: random.Random, fields: dict[str, str]) -> str:
    return _fill(f"{rng.choice(HANDWRITTEN_OPENINGS)} {rng.choice(HANDWRITTEN_CLAUSES)}.", fields)


def _printed_answer(rng: random.Random, fields: dict[str, str], max_words: int) -> PageAnswer:
    """A book page (running head, page number) or a journal article page (journal name, issue and page)."""
    title = rng.choice(BOOK_TITLES)
    page = fields["pagina"]
    if max_words >= ROOMY_PAGE_WORDS and rng.random() < 0.3:
        journal = rng.choice(("Revista Brasileira de História", "Cadernos de Pesquisa", "Revista de Economia",
                              "Estudos Avançados", "Revista de Letras"))
        header = rng.choice((journal, f"{journal} — {fields['nome']}", title))
        footer = f"{journal}, v. {rng.randint(1, 60)}, n. {rng.randint(1, 4)}, p. {page}, {fields['ano']}"
    else:
        header = rng.choice((
            f"Capítulo {rng.randint(1, 12)} — {title}", title.upper(), title, fields["nome"],
        ))
        footer = rng.choice((page, f"— {page} —", f"Página {page}", f"{page} | {title}"))
    notes = ("Ver nota {numero}.", "cf. p. {pagina}", "Importante!", "Revisão")
    margin = rng.choice(notes) if rng.random() < 0.2 else ""
    sentences = _sentence_stream(rng, PRINTED_SENTENCES, fields, max_words, _composed_printed)
    return PageAnswer(header=header, margin=_fill(margin, fields), footer=footer,
                      text=bounded_text(rng, sentences, max_words))


def _handwritten_answer(rng: random.Random, fields: dict[str, str], max_words: int) -> PageAnswer:
    """A school essay, note or letter: headers and footers are often missing, the body is short."""
    header = rng.choice((
        "Redação", "Nome: {nome}", "{cidade}, {data}", "Tema: A importância da leitura", "Diário — {data}",
    )) if rng.random() < 0.4 else ""
    grade = f"Nota: {rng.randint(4, 10)},{rng.choice('05')}"
    margin = rng.choice(("Rascunho", "Revisar", grade, "OK")) if rng.random() < 0.15 else ""
    footer = rng.choice(("{primeiro_nome}", "{pagina}", "Obrigado(a)!")) if rng.random() < 0.3 else ""
    sentences = _sentence_stream(rng, HANDWRITTEN_SENTENCES, fields, max_words, _composed_handwritten)
    return PageAnswer(header=_fill(header, fields), margin=_fill(margin, fields),
                      footer=_fill(footer, fields), text=bounded_text(rng, sentences, max_words))


def _legal_answer(rng: random.Random, fields: dict[str, str], max_words: int) -> PageAnswer:
    """An ofício, certidão, contrato, procuração or boleto: institution on top, a stamp or folio in the margin."""
    kind = rng.choice((*sorted(LEGAL_DOCUMENTS), *(("boleto",) if max_words >= ROOMY_PAGE_WORDS else ())))
    extra = {"ordinal": f"{rng.randint(1, 9)}º", "fls": str(rng.randint(1, 250)), "folha": str(rng.randint(1, 9)),
             "selo": "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", k=8))}
    slots = {**fields, **extra}
    if kind == "boleto":
        header = rng.choice(BANKS)
        text = "\n".join(_bounded([_fill(line, slots) for line in BOLETO_LINES], max_words))
    else:
        header = rng.choice((
            "TRIBUNAL DE JUSTIÇA DO ESTADO {estado_de} {estado}", "PREFEITURA MUNICIPAL DE {cidade}",
            "CARTÓRIO DO {ordinal} OFÍCIO DE NOTAS DE {cidade}",
            "MINISTÉRIO PÚBLICO DO ESTADO {estado_de} {estado}", "REGISTRO CIVIL DAS PESSOAS NATURAIS",
            "CÂMARA MUNICIPAL DE {cidade}", "{empresa}",
        ))
        if max_words >= ROOMY_PAGE_WORDS and rng.random() < 0.4:
            header += "\n" + rng.choice(DEPARTMENTS)
        clauses = rng.sample(LEGAL_CLAUSES, len(LEGAL_CLAUSES))
        text = bounded_text(rng, [_fill(sentence, slots) for sentence in (*LEGAL_DOCUMENTS[kind], *clauses)],
                            max_words)
    margin = rng.choice((
        "Fls. {fls}", "CONFERE COM O ORIGINAL", "Proc. nº {numero}/{ano}", "Selo digital {selo}", "",
    ))
    footer = rng.choice((
        "{rua}, {numero_rua} — {bairro}, {cidade}/{uf} — CEP {cep} — Página {folha}",
        "{rua}, {numero_rua}, {cidade}/{uf} — fls. {folha}",
        "CEP {cep} — {cidade}/{uf} — {folha}",
    ))
    return PageAnswer(header=_fill(header, slots).upper(), margin=_fill(margin, slots),
                      footer=_fill(footer, slots), text=text)
